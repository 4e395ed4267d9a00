"""One module per stage, each with `run(recipe, *, inputs, out_dir, target) -> metrics`."""
