"""What the user asks for: the study file, parsed strictly (studyfile, strict), the built-in
network's [data] and [train] sections (builtin), the searched parameters and their ranges
(space), the planned values (plan), a fine stage's narrowed range (narrowing), and the study
files the wheel ships (starter)."""
