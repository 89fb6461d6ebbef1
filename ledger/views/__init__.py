"""The views' runner (catch-up, rebuild, inline application), the projection workers, bulk work's collector."""
