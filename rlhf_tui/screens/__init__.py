"""The app's screens: the runs browser and the per-run dashboard."""
