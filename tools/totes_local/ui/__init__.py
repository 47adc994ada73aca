"""``totes ui``: a web console of a local deployment, served on 127.0.0.1.

Four pages read what the deployment keeps through the APIs the CLI uses: the
executions (Step Functions), an execution's graph and history, the pipeline's
health (the warehouse, the quarantine, the alert topic) and the client's sales
questions answered from the lake. Every asset is served by the console itself.
"""
