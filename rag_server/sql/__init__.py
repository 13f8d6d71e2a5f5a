"""The sql route: a catalog of a domain's tables, SQL generation, validation and a read-only sandbox."""
