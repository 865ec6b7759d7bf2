"""Price sources outside the route file: the operator's pricing services."""
