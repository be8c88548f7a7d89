"""The recipe: what a dataset is made of, as YAML validated up front.

- `spec`: the `Recipe` record, loading shipped or user recipes, fingerprints.
- `checks`: cross-field checks of a recipe and of drawn parameters against it.
- `distributions`: the distribution specs (`{uniform: [a, b]}`, `{choice: [...]}`) a recipe draws from.
"""
