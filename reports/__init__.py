"""Reports: read records, aggregate with pandas, render tables. Never trains."""
