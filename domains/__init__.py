"""polyrank.domains: one sub-package per paper family. Domains never import each other."""
