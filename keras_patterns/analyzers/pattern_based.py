"""PatternNet and PatternAttribution analyzers (filled in by the pattern work)."""
