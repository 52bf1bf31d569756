"""Report text: section extraction and sentence splitting."""

from txtrayalign.text.sections import SECTION_COLUMNS, ReportSections, extract_sections
from txtrayalign.text.sentences import split_sentences, unwrap

__all__ = ["SECTION_COLUMNS", "ReportSections", "extract_sections", "split_sentences", "unwrap"]
