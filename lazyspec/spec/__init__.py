"""Reading specs: YAML -> located nodes -> validated spec objects."""
