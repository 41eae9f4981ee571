"""One widget per file. Components draw what their screen hands them; they hold no business logic."""
