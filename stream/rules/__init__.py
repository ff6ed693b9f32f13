"""Rules are data: a typed model, a YAML loader and a compiler to fast predicates."""
