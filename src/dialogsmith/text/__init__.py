"""Text normalizations and blocklists shared by the conversation and filter stages."""
