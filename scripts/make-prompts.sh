#!/bin/sh
# Regenerate the shipped IVR prompts in gateway/prompts/ (8 kHz, mono, 16-bit signed WAV).
# Needs espeak-ng and sox. The WAVs are committed; run this only to change a prompt's words.
# Usage: scripts/make-prompts.sh [output-dir]
set -eu

out="${1:-$(dirname "$0")/../gateway/prompts}"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

make_prompt() {
    name="$1"
    text="$2"
    espeak-ng -v en-us -s 150 -w "$tmp/$name.wav" "$text"
    # Resample to 8 kHz mono 16-bit, normalise to -3 dBFS peak, cut espeak's trailing
    # silence (about 0.4 s) and end with 150 ms of silence instead.
    sox "$tmp/$name.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/$name.wav" \
        norm -3 reverse silence 1 0.01 0.5% reverse pad 0 0.15
}

make_prompt welcome "Welcome. Please enter your meeting PIN, followed by the pound key."
make_prompt invalid_pin "That PIN is not valid. Please try again."
make_prompt joining "Joining the meeting."
make_prompt only_participant "You are the only participant in this meeting."
make_prompt goodbye "Goodbye."
make_prompt muted "You are muted."
make_prompt unmuted "You are unmuted."
make_prompt muted_by_moderator "You have been muted by the moderator. Press star six to unmute."
make_prompt removed "You have been removed from the meeting."
make_prompt blocked "Too many attempts. Please try again later."
make_prompt room_not_found "That meeting could not be found."
make_prompt room_full "This meeting is full. Goodbye."
make_prompt busy "We cannot check your PIN right now. Please call again later."
make_prompt enter_password "This meeting has a password. Please enter it, followed by the pound key."
make_prompt invalid_password "That password is not right. Please try again."
make_prompt password_failed "That password is not right. Goodbye."
make_prompt password_not_typable "This meeting's password cannot be typed on a phone."
make_prompt not_allowed "This meeting is for invited participants only. Goodbye."
make_prompt lobby_wait "Please wait, the host will let you in."
make_prompt admitted "You are now in the meeting."
make_prompt denied "The host did not let you in. Goodbye."
make_prompt lobby_timeout "Nobody has let you in yet. Please call again later. Goodbye."
make_prompt host_joined "You are the host. Star one lets everyone in, star two locks or unlocks, star three records."
make_prompt admitted_all "Everyone who was waiting is now in the meeting."
make_prompt nobody_waiting "Nobody is waiting."
make_prompt room_locked "The meeting is locked. New callers will wait in the lobby."
make_prompt room_unlocked "The meeting is unlocked."
make_prompt recording_on "This meeting is now being recorded."
make_prompt recording_off "This meeting is no longer being recorded."
make_prompt recording_failed "The recording could not start."
make_prompt moved_to_lobby "The host moved you to the lobby."
