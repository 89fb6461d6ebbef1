"""The API's routers, one per resource; ``create_app`` mounts them and others may add their own."""
