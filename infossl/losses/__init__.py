"""Loss functions: plain tensor code, no Lightning. One file per family."""
