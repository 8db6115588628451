"""What people see: inspection (`status`, `trials`, `show`), the result tables, figures and
report, and how numbers and column names are shown."""
