"""Front doors: the `raygan` command and the flags every study script shares."""
