"""edgeport on Ray (the `cluster` extra): joining a cluster, analyze on Ray Data, report evaluations as tasks.

Nothing here is imported by the runtime or the daemon; ray itself is imported inside the functions.
"""
