"""The read-only terminal view of a run (``moltsim watch``). The only package that imports
Textual."""
