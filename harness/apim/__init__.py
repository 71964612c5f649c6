"""APIM configuration in and out: backend resources (ARM JSON) and an API's policy XML <-> a scenario.

`harness scenario from-apim` reads the gateway a team already runs into a scenario; `harness scenario to-apim`
writes a scenario's (or a sweep's recommended) settings back as an ARM template and a policy fragment.
"""
