"""Reports: quality.json and the terminal table now; the compare report builds on them."""
