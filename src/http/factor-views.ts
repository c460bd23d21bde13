/** View data shared by the sign-in and account pages for setting up factors. */
import type { TotpEnrollment } from '../auth/totp.js';

/** The TOTP setup block: QR code (inline SVG as a data URL), otpauth:// link, and the key grouped by four. */
export const totpSetupView = (enrollment: TotpEnrollment) => ({
  qrDataUrl: `data:image/svg+xml;base64,${Buffer.from(enrollment.qrSvg).toString('base64')}`,
  uri: enrollment.uri,
  secret: enrollment.secret.replace(/(.{4})/g, '$1 ').trim(),
});

/** The recovery codes page: the codes and a text file of them to download. */
export const recoveryCodesView = (siteName: string, username: string, codes: string[]) => ({
  codes,
  // `Acme Sign-in` → Acme-Sign-in-recovery-codes.txt
  filename: `${siteName.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'sign-in'}-recovery-codes.txt`,
  download: `data:text/plain;charset=utf-8,${encodeURIComponent(`${siteName} recovery codes for ${username}\n\n${codes.join('\n')}\n`)}`,
});
