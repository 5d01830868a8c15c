"""The OpenAI Agents SDK (`openai-agents`) against canarist in front of the mock upstream.

The Agents SDK drives the Responses API (`POST /v1/responses`): an agent's turn is a Responses
call, streamed for `Runner.run_streamed`, and a tool decision is a `function_call` output item
that the SDK executes and answers with a `function_call_output` input item. Run by
scripts/e2e-python-apis.sh with CANARIST_GATEWAY_URL set to a gateway whose deployments
`responses-bot` (shadowed to a candidate) and `responses-tools` (the mock's tool-calling
profile) are on the Responses API.
"""

import asyncio
import os
import sys
import unittest

from agents import (
    Agent,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent

GATEWAY = os.environ["CANARIST_GATEWAY_URL"]
# The SDK would export traces to api.openai.com; this machine has no internet and a test must not
# send anything outside the loopback.
set_tracing_disabled(True)

CALLS = []


@function_tool
def lookup_order(order_id: str) -> str:
    """Look an order up by its id."""
    CALLS.append(order_id)
    return f"order {order_id} shipped yesterday"


class AgentsSdk(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        # IsolatedAsyncioTestCase runs its loop in debug mode, which reports every slow callback.
        asyncio.get_running_loop().set_debug(False)
        self.client = AsyncOpenAI(base_url=f"{GATEWAY}/v1", api_key="unused-with-the-mock",
                                  max_retries=0)

    async def asyncTearDown(self):
        await self.client.close()

    def model(self, name):
        return OpenAIResponsesModel(model=name, openai_client=self.client)

    async def test_an_agent_turn_is_answered_through_the_gateway(self):
        agent = Agent(name="support", instructions="You are a support agent.",
                      model=self.model("responses-bot"))
        result = await Runner.run(agent, "Where is my order?")
        self.assertIsInstance(result.final_output, str)
        self.assertTrue(result.final_output.strip(), "the agent's answer is empty")
        # One model call, answered by canarist (the mock's answer, with usage reported).
        self.assertEqual(len(result.raw_responses), 1)
        self.assertGreater(result.raw_responses[0].usage.output_tokens, 0)

    async def test_a_streamed_agent_turn_arrives_as_text_deltas(self):
        agent = Agent(name="support", instructions="You are a support agent.",
                      model=self.model("responses-bot"))
        streamed = Runner.run_streamed(agent, "Where is my order?")
        deltas = []
        async for event in streamed.stream_events():
            if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent):
                deltas.append(event.data.delta)
        self.assertGreater(len(deltas), 1, "a streamed answer comes as several deltas")
        self.assertEqual("".join(deltas), streamed.final_output)

    async def test_a_tool_decision_is_executed_by_the_sdk(self):
        # The mock's tool profile calls the declared tool on every turn, so the agent stops on the
        # first tool call and its output is the tool's result.
        CALLS.clear()
        agent = Agent(name="orders", instructions="Look orders up.", tools=[lookup_order],
                      tool_use_behavior="stop_on_first_tool", model=self.model("responses-tools"))
        result = await Runner.run(agent, "Where is order A-1042?",
                                 run_config=RunConfig(tracing_disabled=True))
        self.assertEqual(len(CALLS), 1, "the SDK executed the tool the model called once")
        self.assertEqual(result.final_output, f"order {CALLS[0]} shipped yesterday")
        calls = [item for item in result.new_items if item.type == "tool_call_item"]
        self.assertEqual([c.raw_item.name for c in calls], ["lookup_order"])


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
