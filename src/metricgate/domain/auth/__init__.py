"""Access control as values and rules: permission levels and how grants resolve (MLflow's model),
the access rule each route declares, credential formats and input rules. No I/O; design in
docs/design-auth.md."""
