"""Structure: traced dependency graphs, coupled channel groups, shrinking, speed, layout."""
