"""Representative calibration sets (issue 3): sampling and caching on top of edgeport.runtime.preprocess."""
