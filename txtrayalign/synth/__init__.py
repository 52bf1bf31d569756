"""The built-in synthetic dataset: chest radiographs and reports in the exact MIMIC-CXR(-JPG) layout.

`generate(out, studies, seed, ...)` writes the files, reports and tables; every positive finding in
the labels has a visible sign in the images and is stated in the report's label-bearing section.
"""

from txtrayalign.synth.generate import generate

__all__ = ["generate"]
