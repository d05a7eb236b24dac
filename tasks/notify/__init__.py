"""Notification channels (push, SMS, e-mail) and the templates their messages come from.

message = MessageTemplate("Hi $name", "Your code is ${code}.").render(variables)
async with SmsChannel(settings.sms) as sms:
    await sms.send("+15550100", message)
"""

from tasks.notify.channel import Channel
from tasks.notify.email import EmailChannel, build_message
from tasks.notify.errors import (
    ChannelNotConfigured,
    InvalidRecipient,
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
)
from tasks.notify.http_channels import HttpChannel, PushChannel, SmsChannel
from tasks.notify.templates import MessageTemplate, RenderedMessage, TemplateError, render

__all__ = [
    "Channel",
    "ChannelNotConfigured",
    "EmailChannel",
    "HttpChannel",
    "InvalidRecipient",
    "MessageTemplate",
    "ProviderError",
    "ProviderRejected",
    "ProviderThrottled",
    "ProviderUnavailable",
    "PushChannel",
    "RenderedMessage",
    "SmsChannel",
    "TemplateError",
    "build_message",
    "render",
]
