#!/bin/sh
ip netns del spk_a 2>/dev/null; ip netns del spk_b 2>/dev/null; true
