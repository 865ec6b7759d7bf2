"""The transport-neutral decision: is this request paid, and what happens after the answer."""
