"""Reading videos and masks, writing masks and overlay videos."""
