"""What the user asks for: the study file (parsed strictly), the searched parameters and their
ranges, the planned values, a fine stage's narrowed range, and the study files the wheel ships."""
