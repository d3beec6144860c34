"""Pure DataFrame -> DataFrame transformations, free of I/O, tested on small frames."""
