"""The traffic system: hourly westbound I-94 traffic volume in Minneapolis-St Paul (UCI, CC BY 4.0), a regression."""
