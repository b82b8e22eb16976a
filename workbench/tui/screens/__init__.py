"""The app's screens, one per mode, and its dialogs. Imported lazily by the app."""
