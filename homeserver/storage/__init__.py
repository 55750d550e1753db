"""The only code that speaks SQL. One module per aggregate; plain SQL with $n parameters."""
