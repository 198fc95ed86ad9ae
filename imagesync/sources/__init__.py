"""Sources: where the images to sync come from (plugins in the entry-point group ``imagesync.sources``)."""
