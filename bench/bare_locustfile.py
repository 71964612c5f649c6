"""The bench's baseline: a bare FastHttpUser posting the same request as the harness, recording nothing."""

import json
import os

from locust import FastHttpUser, task


class BareUser(FastHttpUser):
    path = os.environ["BENCH_PATH"]
    body = json.loads(os.environ["BENCH_BODY"])

    @task
    def chat(self) -> None:
        self.client.post(self.path, json=self.body, headers={"api-key": "bench"}, name="chat")
