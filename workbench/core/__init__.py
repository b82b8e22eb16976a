"""UI-free core. Never imports textual; heavy libraries are imported inside the functions that need them."""
