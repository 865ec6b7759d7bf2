"""Discovery documents for buyers: what is sold, where, at what price."""
