"""The service's use cases over the live state: verdicts on demand, analyses that watch a canary, the rules people
give (feedback, marks), and the reviewer's views. Routers call these; these call the pure analysis on the engine."""
