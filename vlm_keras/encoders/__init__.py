"""Image encoders: each owns its preprocessing (`image_inputs`) and the feature cache it feeds."""
