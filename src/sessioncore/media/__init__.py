"""Media: SDP offer/answer, RTP port allocation and (elsewhere in this package) RTP itself."""
