"""Property predictors behind one interface: ``predict(formulas) -> (mean, std)``."""
