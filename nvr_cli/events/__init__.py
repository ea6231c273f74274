"""When an event starts, goes on, splits and ends (controller, pure logic), and the pre-alarm buffer."""
