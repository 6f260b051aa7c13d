"""One router per resource: rater API, admin API, images, HTML pages."""
