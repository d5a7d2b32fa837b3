"""Model registry: domain records, MLflow's registry rules and the service every write goes through."""
