"""agentwatch"""
