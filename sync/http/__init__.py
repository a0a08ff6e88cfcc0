"""The HTTP surface: ingress (the endpoints), auth (credentials), console/ (operator pages)."""
