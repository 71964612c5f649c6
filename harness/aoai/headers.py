"""Names of the correlation headers every layer reads or writes (HTTP header names are case-insensitive;
these are the lower-case spellings the harness sends and looks up).

    >>> CLIENT_REQUEST_ID, GATEWAY_REQUEST_ID, BACKEND
    ('x-ms-client-request-id', 'x-gateway-request-id', 'x-backend')
"""

CLIENT_REQUEST_ID = "x-ms-client-request-id"  # the caller's id of an attempt (AOAI echoes it)
GATEWAY_REQUEST_ID = "x-gateway-request-id"  # the reference gateway's own id of a request
BACKEND = "x-backend"  # the pool member that answered (the reference gateway adds it)
GATEWAY_REPLICA = "x-gateway-replica"  # which gateway replica answered, 0-based (only with more than one)

# AOAI's quota headers on a backend's answer: what is left in the deployment's request and token windows
RATELIMIT_REMAINING_REQUESTS = "x-ratelimit-remaining-requests"
RATELIMIT_REMAINING_TOKENS = "x-ratelimit-remaining-tokens"
# a PTU deployment's answer: how full its provisioned throughput is, in percent ("42.0%")
DEPLOYMENT_UTILIZATION = "azure-openai-deployment-utilization"
