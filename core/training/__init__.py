"""A lab's models from the command line: register weights, fit built-in models on the imported cohort, store predictions."""
