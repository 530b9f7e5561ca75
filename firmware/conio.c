/* Simple Text Output on COM1, the debug console and the screen (video.c), Simple Text Input (and Ex)
 * from COM1 and the synthetic keyboard (kbd.c) merged (UEFI 2.10 chapter 12). Output is UTF-8 with ANSI/VT100 sequences for colours and cursor moves
 * on COM1 (the debug console is a log: text only); input decodes what a terminal sends
 * (guestlib/efi/efi_conio.c). Every port access is an exit to the VMM, so a poll with nothing
 * waiting costs one LSR read and output costs about one exit per byte per console. */
#include "fw.h"

#include "conio.h"
#include "storage.h"
#include "efi/efi_conio.h"

/* Text modes: 0 is 80x25 as the specification requires; 1 is 80x50 (the specification's mode 1);
 * 2 is 100x31; 3 is the whole screen in 8x16 cells (128x48 on 1024x768, 200x75 on 1600x1200; 128x48
 * until a screen is attached). A serial terminal has no real size, so these only bound the cursor;
 * with a screen, a mode it cannot hold (80x50 on 1024x768, 100x31 on 640x480) is unsupported, as
 * the specification allows. */
static uint16_t conout_modes[][2] = { { 80, 25 }, { 80, 50 }, { 100, 31 }, { 128, 48 } };
#define CONOUT_NR_MODES (sizeof(conout_modes) / sizeof(conout_modes[0]))
#define CONOUT_DEFAULT_ATTR EFI_TEXT_ATTR(EFI_LIGHTGRAY, EFI_BLACK)

/* A lone ESC is told from the start of an escape sequence by the wait for its next byte: a
 * terminal sends a sequence's bytes together, a person cannot type that fast. */
#define ESC_TIMEOUT_US 30000

static SIMPLE_TEXT_OUTPUT_MODE conout_mode;
static EFI_HANDLE con_handle;

static struct efi_keydec keydec;
static EFI_INPUT_KEY keyq[16];
static unsigned keyq_head, keyq_count;

#define KEY_NOTIFY_MAX 8
static struct {
	EFI_KEY_DATA key;
	EFI_KEY_NOTIFY_FUNCTION fn;
} key_notify[KEY_NOTIFY_MAX];

/* ---- output ---- */

static void conout_esc(const char *s, size_t n)
{
	fw_console_write(s, n, FW_CON_COM1);
}

static bool conout_mode_ok(UINTN mode)
{
	return mode < CONOUT_NR_MODES &&
	       (!fw_screen_present() || fw_screen_mode_fits(conout_modes[mode][0], conout_modes[mode][1]));
}

static void conout_track(const CHAR16 *s, size_t n)
{
	int32_t cols = conout_modes[conout_mode.Mode][0], rows = conout_modes[conout_mode.Mode][1];
	int32_t col = conout_mode.CursorColumn, row = conout_mode.CursorRow;
	for (size_t i = 0; i < n; i++) {
		CHAR16 c = s[i];
		if (c == '\r') {
			col = 0;
		} else if (c == '\n') {
			if (row < rows - 1)
				row++;
		} else if (c == '\b') {
			if (col > 0)
				col--;
		} else if (c >= 0x20 && (c < 0xdc00 || c > 0xdfff)) { /* a low surrogate adds no column */
			if (++col >= cols) {
				col = 0;
				if (row < rows - 1)
					row++;
			}
		}
	}
	conout_mode.CursorColumn = col;
	conout_mode.CursorRow = row;
}

static EFI_STATUS EFIAPI conout_output_string(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, CHAR16 *s)
{
	if (!s)
		return EFI_INVALID_PARAMETER;
	char buf[192];
	bool bad = false;
	while (*s) {
		size_t used;
		size_t n = efi_ucs2_to_utf8(s, &used, buf, sizeof(buf), &bad);
		fw_console_write(buf, n, FW_CON_COM1 | FW_CON_DEBUGCON);
		fw_screen_write16(s, used);
		conout_track(s, used);
		s += used;
	}
	return bad ? EFI_WARN_UNKNOWN_GLYPH : EFI_SUCCESS;
}

static EFI_STATUS EFIAPI conout_test_string(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, CHAR16 *s)
{
	if (!s)
		return EFI_INVALID_PARAMETER;
	/* UTF-8 renders every character; only a broken surrogate pair cannot be. */
	for (; *s; s++) {
		if (*s >= 0xd800 && *s <= 0xdbff && s[1] >= 0xdc00 && s[1] <= 0xdfff)
			s++;
		else if (*s >= 0xd800 && *s <= 0xdfff)
			return EFI_UNSUPPORTED;
	}
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI conout_query_mode(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, UINTN mode, UINTN *cols,
					   UINTN *rows)
{
	if (!conout_mode_ok(mode))
		return EFI_UNSUPPORTED;
	if (!cols || !rows)
		return EFI_INVALID_PARAMETER;
	*cols = conout_modes[mode][0];
	*rows = conout_modes[mode][1];
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI conout_clear_screen(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This)
{
	/* ESC[2J fills with the current background, as ClearScreen must. */
	conout_esc("\x1b[2J\x1b[H", 7);
	fw_screen_clear();
	conout_mode.CursorColumn = 0;
	conout_mode.CursorRow = 0;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI conout_set_mode(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, UINTN mode)
{
	if (!conout_mode_ok(mode))
		return EFI_UNSUPPORTED;
	conout_mode.Mode = (int32_t)mode;
	fw_screen_set_mode(conout_modes[mode][0], conout_modes[mode][1]); /* the screen cleared */
	conout_esc("\x1b[2J\x1b[H", 7);
	conout_mode.CursorColumn = 0;
	conout_mode.CursorRow = 0;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI conout_set_attribute(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, UINTN attr)
{
	if (attr > 0x7f)
		return EFI_UNSUPPORTED;
	if ((int32_t)attr != conout_mode.Attribute) {
		char buf[24];
		conout_esc(buf, efi_ansi_attr(buf, (unsigned)attr));
		conout_mode.Attribute = (int32_t)attr;
		fw_screen_set_attr((uint8_t)attr);
	}
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI conout_set_cursor(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, UINTN col, UINTN row)
{
	const uint16_t *m = conout_modes[conout_mode.Mode];
	if (col >= m[0] || row >= m[1])
		return EFI_UNSUPPORTED;
	char buf[24];
	conout_esc(buf, efi_ansi_goto(buf, (unsigned)col, (unsigned)row));
	fw_screen_goto((uint32_t)col, (uint32_t)row);
	conout_mode.CursorColumn = (int32_t)col;
	conout_mode.CursorRow = (int32_t)row;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI conout_enable_cursor(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, BOOLEAN visible)
{
	conout_esc(visible ? "\x1b[?25h" : "\x1b[?25l", 6);
	fw_screen_enable_cursor(visible != 0);
	conout_mode.CursorVisible = visible ? 1 : 0;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI conout_reset(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, BOOLEAN ext)
{
	conout_mode.Attribute = -1; /* force the SGR out */
	conout_set_attribute(This, CONOUT_DEFAULT_ATTR);
	conout_enable_cursor(This, 1);
	return conout_set_mode(This, 0);
}

void fw_conio_screen_attached(void)
{
	uint32_t cols, rows;
	if (fw_screen_cells(&cols, &rows)) {
		conout_modes[CONOUT_NR_MODES - 1][0] = (uint16_t)cols;
		conout_modes[CONOUT_NR_MODES - 1][1] = (uint16_t)rows;
	}
	if (!conout_mode_ok((UINTN)conout_mode.Mode))
		conout_mode.Mode = 0;
	fw_screen_set_attr((uint8_t)conout_mode.Attribute);
	fw_screen_enable_cursor(conout_mode.CursorVisible != 0);
	fw_screen_set_mode(conout_modes[conout_mode.Mode][0], conout_modes[conout_mode.Mode][1]);
}

EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL fw_conout = {
	.Reset = conout_reset,
	.OutputString = conout_output_string,
	.TestString = conout_test_string,
	.QueryMode = conout_query_mode,
	.SetMode = conout_set_mode,
	.SetAttribute = conout_set_attribute,
	.ClearScreen = conout_clear_screen,
	.SetCursorPosition = conout_set_cursor,
	.EnableCursor = conout_enable_cursor,
	.Mode = &conout_mode,
};

/* ---- input ---- */

/* True once timeout_us has passed since t0, or, as a backstop against a clock that does not move,
 * once more polls than the timeout could hold have been made (each poll is at least one exit,
 * which costs more than MIN_POLL_US). */
#define MIN_POLL_US 4
static bool conio_expired(uint64_t t0, uint64_t polls, uint64_t timeout_us)
{
	return fw_stor_now_us() - t0 >= timeout_us || polls >= timeout_us / MIN_POLL_US;
}

static void keyq_push(const EFI_INPUT_KEY *k, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (keyq_count == sizeof(keyq) / sizeof(keyq[0]))
			return; /* typed ahead too far: drop, as a keyboard buffer does */
		keyq[(keyq_head + keyq_count++) % (sizeof(keyq) / sizeof(keyq[0]))] = k[i];
		for (unsigned j = 0; j < KEY_NOTIFY_MAX; j++) {
			const EFI_INPUT_KEY *want = &key_notify[j].key.Key;
			if (key_notify[j].fn && want->ScanCode == k[i].ScanCode && want->UnicodeChar == k[i].UnicodeChar) {
				EFI_KEY_DATA kd = { k[i], { 0, 0 } };
				key_notify[j].fn(&kd);
			}
		}
	}
}

/* Moves what COM1 and the synthetic keyboard hold into the key queue. A lone ESC on COM1 is
 * completed here, after waiting up to ESC_TIMEOUT_US for the rest of a sequence. Returns true when a
 * key is queued. */
static bool conin_poll(void)
{
	EFI_INPUT_KEY k[2];
	uint8_t b;
	while (keyq_count < sizeof(keyq) / sizeof(keyq[0]) && fw_kbd_poll(&k[0]))
		keyq_push(k, 1);
	for (unsigned guard = 0; guard < 64 && keyq_count < sizeof(keyq) / sizeof(keyq[0]); guard++) {
		if (!fw_console_getc(&b))
			break;
		keyq_push(k, efi_keydec_feed(&keydec, b, k));
	}
	if (!efi_keydec_pending(&keydec))
		return keyq_count != 0;
	uint64_t t0 = fw_stor_now_us();
	for (uint64_t polls = 0;; polls++) {
		if (fw_console_getc(&b)) {
			keyq_push(k, efi_keydec_feed(&keydec, b, k));
			if (!efi_keydec_pending(&keydec))
				return keyq_count != 0;
			continue;
		}
		if (conio_expired(t0, polls, ESC_TIMEOUT_US))
			break;
	}
	keyq_push(k, efi_keydec_timeout(&keydec, k));
	return keyq_count != 0;
}

static bool keyq_pop(EFI_INPUT_KEY *key)
{
	if (!keyq_count && !conin_poll())
		return false;
	*key = keyq[keyq_head];
	keyq_head = (keyq_head + 1) % (sizeof(keyq) / sizeof(keyq[0]));
	keyq_count--;
	return true;
}

EFI_STATUS fw_conio_read_key(EFI_INPUT_KEY *key, uint64_t timeout_us)
{
	if (!(fw_console_present() & FW_CON_COM1) && !fw_kbd_present())
		return EFI_NOT_READY;
	uint64_t t0 = fw_stor_now_us();
	for (uint64_t polls = 0;; polls++) {
		if (keyq_pop(key))
			return EFI_SUCCESS;
		if (fw.bs)
			fw_event_poll(); /* timers keep running while we wait */
		/* The poll-count backstop holds only for polls that exit (COM1's LSR read): the keyboard's
		 * ring is read without one, so without COM1 the clock alone decides. */
		bool exits = fw_console_present() & FW_CON_COM1;
		if (timeout_us != UINT64_MAX && conio_expired(t0, exits ? polls : 0, timeout_us))
			return EFI_TIMEOUT;
	}
}

static EFI_STATUS EFIAPI conin_reset(EFI_SIMPLE_TEXT_INPUT_PROTOCOL *This, BOOLEAN ext)
{
	efi_keydec_reset(&keydec);
	keyq_count = 0;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI conin_read_key(EFI_SIMPLE_TEXT_INPUT_PROTOCOL *This, EFI_INPUT_KEY *key)
{
	if (!key)
		return EFI_INVALID_PARAMETER;
	return keyq_pop(key) ? EFI_SUCCESS : EFI_NOT_READY;
}

static EFI_STATUS EFIAPI conin_ex_reset(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, BOOLEAN ext)
{
	return conin_reset(NULL, ext);
}

static EFI_STATUS EFIAPI conin_ex_read_key(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, EFI_KEY_DATA *kd)
{
	if (!kd)
		return EFI_INVALID_PARAMETER;
	/* A serial terminal does not report shift or toggle state: neither is marked valid without the
	 * synthetic keyboard, whose state is given when it is there. */
	kd->KeyState.KeyShiftState = 0;
	kd->KeyState.KeyToggleState = 0;
	if (fw_kbd_present())
		fw_kbd_state(&kd->KeyState.KeyShiftState, &kd->KeyState.KeyToggleState);
	return keyq_pop(&kd->Key) ? EFI_SUCCESS : EFI_NOT_READY;
}

static EFI_STATUS EFIAPI conin_ex_set_state(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, EFI_KEY_TOGGLE_STATE *st)
{
	if (!st)
		return EFI_INVALID_PARAMETER;
	return (*st & EFI_TOGGLE_STATE_VALID) ? EFI_SUCCESS : EFI_UNSUPPORTED;
}

static EFI_STATUS EFIAPI conin_ex_register(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, EFI_KEY_DATA *kd,
					   EFI_KEY_NOTIFY_FUNCTION fn, void **handle)
{
	if (!kd || !fn || !handle)
		return EFI_INVALID_PARAMETER;
	for (unsigned j = 0; j < KEY_NOTIFY_MAX; j++) {
		if (key_notify[j].fn == fn && key_notify[j].key.Key.ScanCode == kd->Key.ScanCode &&
		    key_notify[j].key.Key.UnicodeChar == kd->Key.UnicodeChar) {
			*handle = &key_notify[j];
			return EFI_SUCCESS;
		}
	}
	for (unsigned j = 0; j < KEY_NOTIFY_MAX; j++) {
		if (!key_notify[j].fn) {
			key_notify[j].key = *kd;
			key_notify[j].fn = fn;
			*handle = &key_notify[j];
			return EFI_SUCCESS;
		}
	}
	return EFI_OUT_OF_RESOURCES;
}

static EFI_STATUS EFIAPI conin_ex_unregister(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, void *handle)
{
	for (unsigned j = 0; j < KEY_NOTIFY_MAX; j++) {
		if (handle == (void *)&key_notify[j] && key_notify[j].fn) {
			key_notify[j].fn = NULL;
			return EFI_SUCCESS;
		}
	}
	return EFI_INVALID_PARAMETER;
}

EFI_SIMPLE_TEXT_INPUT_PROTOCOL fw_conin = {
	.Reset = conin_reset,
	.ReadKeyStroke = conin_read_key,
};

EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL fw_conin_ex = {
	.Reset = conin_ex_reset,
	.ReadKeyStrokeEx = conin_ex_read_key,
	.SetState = conin_ex_set_state,
	.RegisterKeyNotify = conin_ex_register,
	.UnregisterKeyNotify = conin_ex_unregister,
};

/* WaitForKey(Ex): an EVT_NOTIFY_WAIT event, so WaitForEvent and CheckEvent poll COM1 through it. */
static void EFIAPI conin_wait_notify(EFI_EVENT ev, void *ctx)
{
	if (conin_poll() && fw.bs)
		fw.bs->SignalEvent(ev);
}

/* ---- start-up ---- */

EFI_STATUS fw_conio_init(void)
{
	conout_mode.MaxMode = CONOUT_NR_MODES;
	conout_mode.Mode = 0;
	conout_mode.Attribute = CONOUT_DEFAULT_ATTR;
	conout_mode.CursorVisible = 1;
	/* The banner goes through the protocol, so the UCS-2 path is exercised from the first boot. */
	fw_conout.OutputString(&fw_conout, u"" FW_VERSION "\r\n");

	EFI_STATUS s = EFI_SUCCESS;
	if (fw.bs) {
		EFI_GUID out = EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL_GUID, in = EFI_SIMPLE_TEXT_INPUT_PROTOCOL_GUID,
			 inex = EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL_GUID;
		s = fw.bs->CreateEvent(EVT_NOTIFY_WAIT, TPL_NOTIFY, conin_wait_notify, NULL, &fw_conin.WaitForKey);
		if (!s)
			s = fw.bs->CreateEvent(EVT_NOTIFY_WAIT, TPL_NOTIFY, conin_wait_notify, NULL,
					       &fw_conin_ex.WaitForKeyEx);
		if (!s)
			s = fw.bs->InstallProtocolInterface(&con_handle, &out, EFI_NATIVE_INTERFACE, &fw_conout);
		if (!s)
			s = fw.bs->InstallProtocolInterface(&con_handle, &in, EFI_NATIVE_INTERFACE, &fw_conin);
		if (!s)
			s = fw.bs->InstallProtocolInterface(&con_handle, &inex, EFI_NATIVE_INTERFACE, &fw_conin_ex);
	} else {
		/* No boot services (a build without bs.c): the protocols work but cannot be installed. */
	}
	if (fw.st) {
		fw.st->ConOut = &fw_conout;
		fw.st->StdErr = &fw_conout;
		fw.st->ConIn = &fw_conin;
		fw.st->ConsoleOutHandle = con_handle;
		fw.st->StandardErrorHandle = con_handle;
		fw.st->ConsoleInHandle = con_handle;
		fw_st_changed(); /* the system table's CRC covers these fields */
	}
	return s;
}
